from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import msgspec
import pytest
from components import GateSink
from helpers import pipeline, wait_for

from agent.config.registry import BuildContext
from agent.core.errors import StartupError
from agent.observe.stats import ComponentStats, StatsRegistry
from agent.sources.socket import SocketSource, SocketSourceConfig
from agent.topology.running import Topology


async def send_tcp(port: int, data: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_tcp_lines_from_many_connections_arrive_whole(tmp_path: Path, free_port: int) -> None:
    topo = Topology(pipeline(f"""
sources:
  net: {{type: socket, address: "127.0.0.1:{free_port}", read_bytes: 1KiB}}
sinks:
  got: {{type: test_gate, inputs: [net], open: true}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await asyncio.sleep(0.05)
    payloads = [b"".join(b"conn%d line %05d %s\n" % (c, i, b"x" * (i % 50)) for i in range(2000)) for c in range(20)]
    await asyncio.gather(*(send_tcp(free_port, p) for p in payloads))
    await wait_for(lambda: len(GateSink.instances["got"].events) == 40_000)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0
    got = GateSink.instances["got"].events
    assert sorted(got) == sorted(line for p in payloads for line in p.splitlines())


async def test_a_stalled_pipeline_stops_reading_the_connection(tmp_path: Path, free_port: int) -> None:
    topo = Topology(pipeline(f"""
sources:
  net: {{type: socket, address: "127.0.0.1:{free_port}", read_bytes: 4KiB}}
sinks:
  got: {{type: test_gate, inputs: [net], buffer: {{max_events: 100}}}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await asyncio.sleep(0.05)
    _, writer = await asyncio.open_connection("127.0.0.1", free_port)
    line = b"y" * 99 + b"\n"
    total = 100_000
    writer.write(line * total)  # 10 MB: far more than the pipeline may hold
    await asyncio.sleep(0.5)
    received = topo.nodes["net"].stats.received_events
    assert received < total // 4  # the rest waits in socket buffers, not in our memory
    GateSink.instances["got"].gate.set()
    await writer.drain()
    writer.close()
    await wait_for(lambda: len(GateSink.instances["got"].events) == total, timeout=15)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0


async def test_udp_datagrams_of_several_lines(tmp_path: Path, free_port: int) -> None:
    topo = Topology(pipeline(f"""
sources:
  net: {{type: socket, mode: udp, address: "127.0.0.1:{free_port}"}}
sinks:
  got: {{type: test_gate, inputs: [net], open: true}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    await asyncio.sleep(0.05)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(50):
            s.sendto(b"a %d\nb %d\n" % (i, i), ("127.0.0.1", free_port))
            await asyncio.sleep(0)
    await wait_for(lambda: len(GateSink.instances["got"].events) == 100)
    topo.request_stop()
    assert await asyncio.wait_for(run, 5) == 0
    assert GateSink.instances["got"].events[:2] == [b"a 0", b"b 0"]


async def test_connections_past_max_connections_are_closed_and_counted(tmp_path: Path, free_port: int) -> None:
    topo = Topology(pipeline(f"""
sources:
  net: {{type: socket, address: "127.0.0.1:{free_port}", max_connections: 2}}
sinks:
  got: {{type: test_gate, inputs: [net], open: true}}
""", tmp_path), StatsRegistry())
    run = asyncio.create_task(topo.run())
    await topo.ready.wait()
    got = GateSink.instances["got"].events
    stats = topo.nodes["net"].stats
    open_ = []
    try:
        for i in range(2):  # accepted: each one's line arrives
            reader, writer = await asyncio.open_connection("127.0.0.1", free_port)
            open_.append(writer)
            writer.write(b"kept %d\n" % i)
            await writer.drain()
            await wait_for(lambda i=i: len(got) == i + 1)
        reader, extra = await asyncio.open_connection("127.0.0.1", free_port)
        open_.append(extra)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the source at once
        assert stats.counters[("connections_refused", ())] == 1
        assert stats.gauge_values()["connections"] == 2
        open_[0].close()
        await wait_for(lambda: stats.gauge_values()["connections"] == 1)
        _, again = await asyncio.open_connection("127.0.0.1", free_port)  # room again: accepted
        open_.append(again)
        again.write(b"after\n")
        await again.drain()
        await wait_for(lambda: got[-1:] == [b"after"])
        assert stats.counters[("connections_refused", ())] == 1
    finally:
        for writer in open_:
            writer.close()
        topo.request_stop()
        assert await asyncio.wait_for(run, 5) == 0


@pytest.mark.parametrize("mode", ["tcp", "udp"])
async def test_a_port_in_use_is_one_startup_error_naming_the_source_and_address(
        tmp_path: Path, free_port: int, mode: str) -> None:
    kind = socket.SOCK_STREAM if mode == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", free_port))
        if mode == "tcp":
            holder.listen()
        config = msgspec.convert({"type": "socket", "mode": mode, "address": f"127.0.0.1:{free_port}"},
                                 SocketSourceConfig)
        source = SocketSource(config, BuildContext("net", tmp_path, tmp_path, ComponentStats("net", "source", "socket")))
        with pytest.raises(StartupError) as caught:
            await source.start()
        assert str(caught.value) == (
            f'source "net": cannot listen on 127.0.0.1:{free_port} ({mode}): Address already in use; '
            "is another agent or Fluent Bit listening? change sources.net.address")

        topo = Topology(pipeline(f"""
sources:
  net: {{type: socket, mode: {mode}, address: "127.0.0.1:{free_port}"}}
sinks:
  got: {{type: test_gate, inputs: [net], open: true}}
""", tmp_path), StatsRegistry())
        with pytest.raises(StartupError, match="is another agent or Fluent Bit listening"):
            await asyncio.wait_for(topo.run(), 5)
