"""Bugs found by trying the `kubernetes` transform as a hostile user would (issue 12), each as a reproduction.

Same harness as ``test_kubernetes_enrichment`` (tail -> kubernetes -> a collecting sink, the fake API server)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
from agent_process import AgentProcess, metric_value
from fakes.kubernetes import FakeKubernetes, container_log_name
from helpers import wait_for
from test_kubernetes_enrichment import TOKEN, container_id, node, simple_pod, write

from agent.core.retry import Backoff
from agent.kubernetes.client import KubeClient
from agent.kubernetes.config import ClusterConfig
from agent.kubernetes.pods import PodWatcher


async def test_after_the_api_server_comes_back_a_late_pod_is_waited_for_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A watch the API server accepted again (200, no event yet: a quiet node) is an answer: a file whose pod
    comes a moment later waits for it, as before the outage, instead of passing as ``api_unavailable``."""
    async with node(tmp_path) as n:
        async with n.running(wait_for_pod="5s"):
            await n.k8s.go_down()
            await wait_for(lambda: not n.pods.healthy)
            await n.k8s.come_back()
            await wait_for(lambda: n.k8s.watches_of("pods"), timeout=10)  # the watch is open again, quiet
            await wait_for(lambda: n.pods.healthy)  # its 200 is an answer: no event needed
            late = simple_pod("late", labels={"app": "late"})
            write(n.file(late), "first", "second")
            await asyncio.sleep(0.5)  # the pod shows up in the API a moment after its first lines
            n.k8s.add_pod(late)
            await wait_for(lambda: len(n.events) == 2)
            assert [e["kubernetes"].get("labels") for e in n.events] == [{"app": "late"}] * 2
            assert n.misses() == {}


class _Highest(random.Random):
    """Full jitter at its ceiling: every delay is the longest the backoff allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_a_watch_that_ran_well_then_was_cut_does_not_inherit_an_old_backoff() -> None:
    """An incident long ago (five failed requests) must not make the next cut watch wait as if it were the sixth
    failure in a row: client-go's reflector resets its backoff once a watch has run well."""
    async with FakeKubernetes(token=TOKEN) as k8s:
        client = KubeClient(ClusterConfig(server=k8s.url, authorization=("Bearer", TOKEN)))
        watcher = PodWatcher(client, "node-a", backoff=Backoff(initial=0.01, cap=30.0, rng=_Highest()))
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(watcher.synced.is_set)
            k8s.fail_next_requests(5, 500)  # the incident
            k8s.drop_watches()
            await wait_for(lambda: watcher.healthy and k8s.watches_of("pods"), timeout=5)
            k8s.add_pod(simple_pod("a"))  # the watch runs well a while
            await wait_for(lambda: watcher.get("default", "a") is not None)
            await asyncio.sleep(1.1)
            watches = k8s.count("watch")
            k8s.drop_watches()  # then is cut
            await wait_for(lambda: k8s.count("watch") > watches, timeout=5)
            assert watcher.backoff.attempt <= 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()


async def test_sigterm_while_a_file_waits_for_its_pod_lets_its_lines_go_and_exits_cleanly(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    """SIGTERM while a file waits (wait_for_pod past shutdown_timeout): the drain lets the waiting lines go at once
    (the tail waits for their acks), as a reload does, so the agent exits 0 within the timeout, the lines are
    delivered, and nothing is logged as an error (no 'aclose(): asynchronous generator is already running')."""
    async with FakeKubernetes(token=TOKEN) as k8s:
        logs = tmp_path / "containers"
        logs.mkdir()
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(orjson.dumps({
            "current-context": "f", "contexts": [{"name": "f", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": k8s.url}}],
            "users": [{"name": "u", "user": {"token": TOKEN}}]}).decode())
        write(logs / container_log_name(simple_pod("never-seen"), "main"), "held")
        out = tmp_path / "out.ndjson"
        config = tmp_path / "agent.yaml"
        config.write_text(f"""
data_dir: {tmp_path / "data"}
api: {{address: 127.0.0.1:{free_port}}}
shutdown_timeout: 5s
sources:
  containers: {{type: tail, include: ["{logs}/*.log"], read_from: beginning}}
transforms:
  k8s: {{type: kubernetes, inputs: [containers], kubeconfig: {kubeconfig}, node_name: node-a, wait_for_pod: 1h}}
sinks:
  out: {{type: file, inputs: [k8s], path: "{out}"}}
""")
        validated = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "agent", "validate", "-c",
                                                             str(config)], capture_output=True, text=True, timeout=60)
        assert validated.returncode == 0, validated.stderr
        assert "transforms.k8s.wait_for_pod" in validated.stderr and "shutdown_timeout" in validated.stderr
        agent = start_agent(["run", "-c", str(config)])

        def held() -> bool:
            _, body = agent.get("/metrics")
            return metric_value(body.decode(), "agent_kubernetes_held_files", component_id="k8s") == 1.0

        await asyncio.to_thread(agent.wait_ready)
        await asyncio.to_thread(agent.wait_until, held, 15.0, "the file held for its pod")
        assert not out.exists() or not out.read_text()
        agent.signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 30.0) == 0
        errors = [r["message"] for r in agent.log_records() if r.get("level") == "error"]
        assert errors == []
        assert "asynchronous generator" not in agent.logs()
        assert [orjson.loads(line)["message"] for line in out.read_text().splitlines()] == ["held"]


def test_migrate_with_the_configs_own_parsers_file_also_given_by_flag_reports_no_duplicate(tmp_path: Path) -> None:
    """`agent migrate fluent-bit fluent-bit.conf --parsers custom_parsers.conf`, where the config already names
    custom_parsers.conf (as the example DaemonSet does), is one file read twice, not a parser defined twice."""
    (tmp_path / "p.conf").write_text("[PARSER]\n    Name j\n    Format json\n")
    (tmp_path / "fb.conf").write_text("[SERVICE]\n    Parsers_File p.conf\n[INPUT]\n    Name tail\n"
                                      "    Path /var/log/containers/*.log\n[OUTPUT]\n    Name stdout\n    Match *\n")
    done = subprocess.run([sys.executable, "-m", "agent", "migrate", "fluent-bit", "fb.conf", "--parsers", "p.conf"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "defined before" not in done.stdout


async def test_a_pod_recreated_under_its_name_does_not_relabel_the_old_pods_last_lines(tmp_path: Path) -> None:
    """A StatefulSet's `db-0` is deleted and created again (new uid, new container): the file of the old container
    (its id is in the file name) still has lines; they keep the old pod's metadata, the new file gets the new."""
    async with node(tmp_path) as n:
        old = simple_pod("db-0", labels={"revision": "1"})
        n.k8s.add_pod(old)
        async with n.running():
            write(n.file(old), "old 1")
            await wait_for(lambda: len(n.events) == 1)
            new = simple_pod("db-0", labels={"revision": "2"})
            new["metadata"]["uid"] = "uid-db-0-second"
            new["status"]["containerStatuses"][0]["containerID"] = f"containerd://{container_id('db-0 second')}"
            n.k8s.delete_pod("default", "db-0")
            n.k8s.add_pod(new)
            await wait_for(lambda: (n.pods.get("default", "db-0") or {}).get("metadata", {}).get("uid") ==
                           "uid-db-0-second")
            write(n.file(old), "old 2")  # the old container's last line, read after the new pod came
            write(n.file(new), "new 1")
            await wait_for(lambda: len(n.events) == 3)
            seen = {e["message"]: (e["kubernetes"]["pod_id"], e["kubernetes"]["labels"]) for e in n.events}
            assert seen == {"old 1": ("uid-default-db-0", {"revision": "1"}),
                            "old 2": ("uid-default-db-0", {"revision": "1"}),
                            "new 1": ("uid-db-0-second", {"revision": "2"})}
