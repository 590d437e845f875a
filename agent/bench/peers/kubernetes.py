"""The Kubernetes API server of the kubernetes benchmarks: the test suite's fake (``tests/fakes/kubernetes.py``,
so a source checkout is needed) run as a process of its own, serving one node's realistic pods, so that its
CPU is charged to neither side. The harness sees it only through the API: the pods it lists name the log
files, and ``/fake/requests`` says how many requests of each kind a side made.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import aiohttp

from agent.bench.peers.handles import PeerError
from agent.bench.versus.data import write_logs

REPO = Path(__file__).resolve().parents[3]
FAKE = REPO / "tests" / "fakes" / "kubernetes.py"
NODE = "node-a"
TOKEN = "bench-token"
PODS = 110  # the kubelet's default maximum of pods on a node
READY_S = 20.0


def container_log_name(pod: dict[str, Any], container: str) -> str:
    """The kubelet's ``/var/log/containers`` name of a container's log: ``<pod>_<ns>_<container>-<id>.log``."""
    meta = pod["metadata"]
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return f"{meta['name']}_{meta['namespace']}_{container}-{status['containerID'].split('://', 1)[-1]}.log"
    raise KeyError(f"pod {meta['name']} has no container {container!r}")


def write_pod_logs(logs: Path, lines: int, pods: list[dict[str, Any]]) -> tuple[list[Path], int]:
    """``lines`` Docker json-file lines (:func:`~agent.bench.versus.data.write_logs`) over one file per pod, named
    after its first container; (paths, bytes)."""
    paths, nbytes = write_logs(logs, lines, files=len(pods))
    named = []
    for path, pod in zip(paths, pods, strict=True):
        target = logs / container_log_name(pod, pod["spec"]["containers"][0]["name"])
        path.rename(target)
        named.append(target)
    return named, nbytes


def kubeconfig(url: str, token_file: Path) -> str:
    """A kubeconfig for the fake: its plain-http URL and a bearer token read from ``token_file``."""
    return (f"apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
            f"clusters:\n- name: bench\n  cluster:\n    server: {url}\n"
            f"users:\n- name: bench\n  user:\n    tokenFile: {token_file}\n"
            f"contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n")


class FakeApiServer:
    """``python tests/fakes/kubernetes.py --pods N`` as a child process; always terminated by :meth:`close`."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, token: str) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.token = token

    @classmethod
    async def start(cls, pods: int, token_file: Path, token: str, node: str = NODE) -> FakeApiServer:
        """Start it serving ``pods`` pods of ``node``, accepting ``token`` (what ``token_file`` holds); PeerError
        if it cannot (no checkout, or it does not say ``ready <port>`` in time)."""
        if not FAKE.is_file():
            raise PeerError(f"the kubernetes benchmarks need the fake API server of a source checkout ({FAKE})")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(FAKE), "--pods", str(pods), "--node", node, "--token-file", str(token_file),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(READY_S):
                line = await proc.stdout.readline()
            if not line.startswith(b"ready "):
                raise PeerError(f"the fake API server said {line!r} instead of ready (exit code {proc.returncode})")
        except BaseException:
            await cls._stop(proc)
            raise
        return cls(proc, int(line.split()[1]), token)

    async def _get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession() as http, http.get(self.url + path, headers=headers) as response:
            if response.status != 200:
                raise PeerError(f"the fake API server answered {response.status} to {path}")
            return await response.json()

    async def pods(self) -> list[dict[str, Any]]:
        """The pods it serves, as the API lists them."""
        items: list[dict[str, Any]] = (await self._get("/api/v1/pods"))["items"]
        return items

    async def requests(self) -> dict[str, int]:
        """The API requests made of it so far, by ``<verb> <resource>`` (and ``status <code>`` of the failed)."""
        summary: dict[str, int] = await self._get("/fake/requests")
        return summary

    @staticmethod
    async def _stop(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def close(self) -> None:
        await self._stop(self.proc)

    async def __aenter__(self) -> FakeApiServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
