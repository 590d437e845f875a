"""Source `socket`: newline-delimited lines over TCP (many connections) or UDP.

TCP pushes back: while the downstream buffer is full a connection is not
read, so the sender's TCP window closes. At most ``max_connections`` are
open at once: one more is closed at once and counted
(``agent_socket_connections_refused_total``). UDP cannot push back: datagrams
that arrive while ``max_pending_events`` are waiting are dropped and counted.

The port is bound in :meth:`SocketSource.start`, before the pipeline runs, so
a port in use ends start-up with one line naming the source and the address.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from typing import Literal

from agent.codecs.lines import LineSplitter
from agent.config.model import SourceConfig
from agent.config.registry import BuildContext, register
from agent.config.units import ByteSize
from agent.core.batch import Batch, Kind
from agent.core.component import SourceContext
from agent.core.errors import BuildError, StartupError

log = logging.getLogger("agent.sources.socket")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) into its parts; BuildError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise BuildError(f'address "{address}" must be host:port')
    return host.strip("[]") or "0.0.0.0", int(port)


class SocketSourceConfig(SourceConfig, tag="socket"):
    """Listen on ``address`` (host:port) for newline-delimited lines, over TCP or UDP.

    TCP pushes back: while the pipeline is full a connection is not read, so its sender slows down. At most
    ``max_connections`` are open at once; one more is closed at once and counted. UDP cannot push back: datagrams that
    arrive while ``max_pending_events`` wait are dropped and counted. A port in use stops start-up with one line.
    """

    address: str
    """host:port to listen on (0.0.0.0:5170 for every interface)."""
    mode: Literal["tcp", "udp"] = "tcp"
    """tcp (pushes back on senders while the pipeline is full) or udp (drops and counts instead)."""
    max_line_bytes: ByteSize = ByteSize(256 * 1024)
    """Longer lines are cut to this size, marked truncated: true and counted."""
    read_bytes: ByteSize = ByteSize(256 * 1024)
    """Bytes read from a connection at a time."""
    max_pending_events: int = 100_000
    """udp: datagrams that arrive while this many events wait for the pipeline are dropped and counted."""
    max_connections: int = 1024
    """tcp: open connections at most; one more is closed at once and counted in agent_socket_connections_refused_total.
    """


@register("source", "socket", SocketSourceConfig, "Receives newline-delimited lines over TCP or UDP.")
class SocketSource:
    """Emits one LINES batch per read of each connection (TCP) or per wake-up (UDP)."""

    output_type = "logs"

    def __init__(self, config: SocketSourceConfig, ctx: BuildContext) -> None:
        self.config = config
        self.id = ctx.component_id
        self.host, self.port = split_address(config.address)
        self._connections: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None  # TCP: bound in start(), serving in run()
        self._udp: socket.socket | None = None  # UDP: bound in start()
        self._ctx: SourceContext | None = None
        self._refusing = False

    async def start(self) -> None:
        """Bind the port; StartupError with one line saying what to do when that fails."""
        try:
            if self.config.mode == "udp":
                self._udp = await self._bind_udp()
            else:
                self._server = await asyncio.start_server(
                    self._on_connect, self.host, self.port, limit=self.config.read_bytes, start_serving=False)
        except OSError as exc:
            raise StartupError(self._cannot_listen(exc)) from None

    def _cannot_listen(self, exc: OSError) -> str:
        hint = {errno.EADDRINUSE: "is another agent or Fluent Bit listening? ",
                errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE; "}.get(exc.errno or 0, "")
        reason = exc.strerror if isinstance(exc, socket.gaierror) or not exc.errno else os.strerror(exc.errno)
        return (f'source "{self.id}": cannot listen on {self.config.address} ({self.config.mode}): '
                f"{reason or exc}; {hint}change sources.{self.id}.address")

    async def _bind_udp(self) -> socket.socket:
        infos = await asyncio.get_running_loop().getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return sock

    async def run(self, ctx: SourceContext) -> None:
        if self._server is None and self._udp is None:
            await self.start()
        ctx.stats.gauges["connections"] = lambda: len(self._connections)
        if self.config.mode == "udp":
            await self._run_udp(ctx)
        else:
            await self._run_tcp(ctx)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = self._ctx
        assert ctx is not None
        if len(self._connections) >= self.config.max_connections:
            writer.close()
            ctx.stats.count("connections_refused")
            if not self._refusing:
                self._refusing = True
                log.warning("max_connections reached: closing new connections until some end", extra={
                    "component_id": ctx.id, "max_connections": self.config.max_connections})
            return
        self._refusing = False
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._connections.add(writer)
        try:
            await self._read_connection(ctx, reader)
        except (ConnectionError, OSError) as exc:
            ctx.stats.error("connection_failed", "receiving")
            log.warning("connection failed", extra={"component_id": ctx.id, "error": str(exc)})
        except asyncio.CancelledError:
            # Only this source cancels these tasks, and it waits for them. Ending cancelled would make
            # Python 3.11's stream callback log a traceback per connection (CPython gh-113538).
            return
        finally:
            self._connections.discard(writer)
            writer.close()
            self._handlers.discard(task)

    async def _run_tcp(self, ctx: SourceContext) -> None:
        server, handlers = self._server, self._handlers
        assert server is not None
        self._ctx = ctx
        await server.start_serving()
        log.info("listening", extra={"component_id": ctx.id, "address": self.config.address, "mode": "tcp"})
        async with server:
            try:
                await ctx.shutdown.wait()
            finally:  # on shutdown, and when cancelled at the deadline: no connection task outlives us
                server.close()
                for writer in list(self._connections):
                    writer.close()
                if handlers:
                    if not ctx.shutdown.is_set():
                        for task in handlers:
                            task.cancel()
                    await asyncio.wait(list(handlers))

    async def _read_connection(self, ctx: SourceContext, reader: asyncio.StreamReader) -> None:
        splitter = LineSplitter(self.config.max_line_bytes)
        read_bytes, stats, out = self.config.read_bytes, ctx.stats, ctx.out
        unsent_bytes = 0  # bytes read since the last batch: a read may complete no line
        while not ctx.shutdown.is_set():
            chunk = await reader.read(read_bytes)
            stats.received_bytes += len(chunk)
            unsent_bytes += len(chunk)
            lines = splitter.feed(chunk) if chunk else splitter.flush()
            if splitter.truncated:
                stats.error("line_truncated", "receiving", splitter.truncated)
                splitter.truncated = 0
            if lines:
                stats.received_events += len(lines)
                try:
                    await out.send(Batch(lines, Kind.LINES, unsent_bytes or sum(map(len, lines))))
                except asyncio.CancelledError:
                    stats.discard("shutdown_timeout", len(lines))
                    raise
                unsent_bytes = 0
            if not chunk:
                return

    async def _run_udp(self, ctx: SourceContext) -> None:
        loop = asyncio.get_running_loop()
        pending: list[bytes] = []
        wake = asyncio.Event()
        limit = self.config.max_pending_events
        stats = ctx.stats

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                lines = data.split(b"\n")
                if not lines[-1]:
                    lines.pop()
                if len(pending) + len(lines) > limit:
                    stats.discard("udp_overflow", len(lines))
                    return
                pending.extend(lines)
                stats.received_bytes += len(data)
                wake.set()

        transport, _ = await loop.create_datagram_endpoint(Receiver, sock=self._udp)
        log.info("listening", extra={"component_id": ctx.id, "address": self.config.address, "mode": "udp"})
        stop = asyncio.ensure_future(ctx.shutdown.wait())
        try:
            while True:
                if not pending:
                    woke = asyncio.ensure_future(wake.wait())
                    await asyncio.wait([woke, stop], return_when=asyncio.FIRST_COMPLETED)
                    woke.cancel()
                wake.clear()
                if pending:
                    lines = pending[:]
                    pending.clear()
                    stats.received_events += len(lines)
                    await ctx.out.send(Batch(lines, Kind.LINES, sum(map(len, lines))))
                elif stop.done():
                    return
        finally:
            stop.cancel()
            transport.close()
