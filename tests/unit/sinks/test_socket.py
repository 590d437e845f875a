from __future__ import annotations

import asyncio
from pathlib import Path

from helpers import pipeline, wait_for

from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology


class Receiver:
    """A TCP peer on loopback that collects lines and can drop its connections."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while chunk := await reader.read(65536):
            self.data += chunk
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    @property
    def lines(self) -> list[bytes]:
        return bytes(self.data).splitlines()


async def test_socket_sink_delivers_everything_across_a_peer_outage(tmp_path: Path, free_port: int) -> None:
    topo = Topology(pipeline(f"""
sources:
  gen: {{type: generate, format: text, rate: 4000, batch_size: 100}}
sinks:
  out: {{type: socket, inputs: [gen], encoding: text, address: "127.0.0.1:{free_port}"}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await asyncio.sleep(0.3)  # no peer yet: the sink retries, the source is held back by the buffer
    assert topo.nodes["out"].stats.retries >= 1
    receiver = Receiver()
    await receiver.start(free_port)
    try:
        await wait_for(lambda: len(receiver.lines) >= 1000, timeout=10)
        topo.request_stop()
        assert await asyncio.wait_for(run, 10) == 0
        await asyncio.sleep(0.1)
        assert len(receiver.lines) == topo.nodes["gen"].stats.sent_events
        assert topo.nodes["gen"].stats.gauges["committed_events"] == topo.nodes["gen"].stats.sent_events
    finally:
        await receiver.stop()
