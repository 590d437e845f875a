from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from components import GateSink
from helpers import pipeline, wait_for

from agent.observe.stats import StatsRegistry
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
